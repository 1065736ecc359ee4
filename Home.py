"""Diffusion Diversity Lab: `streamlit run Home.py`. Declares the pages; each page file stays short."""

import streamlit as st

from app import queue as ui_queue

st.set_page_config(page_title="Diffusion Diversity Lab", page_icon="🧪", layout="wide")

# url_path = the file's stem: a fresh server starts in Streamlit's legacy pages/ mode, which finds a deep link's page
# by file name before ui.start_page() switches to st.navigation (a hyphenated path would show "Page not found").
PAGES = {
    "Explore": [
        st.Page("pages/home.py", title="Home", icon="🏠", default=True),
        st.Page("pages/diversity.py", title="Diversity", icon="🌈", url_path="diversity"),
        st.Page("pages/ambiguity.py", title="Ambiguity", icon="🔀", url_path="ambiguity"),
        st.Page("pages/adherence.py", title="Adherence", icon="🎯", url_path="adherence"),
        st.Page("pages/synthetic_vs_natural.py", title="Synthetic vs natural", icon="⚖️",
                url_path="synthetic_vs_natural"),
        st.Page("pages/train_on_synthetic.py", title="Train on synthetic", icon="🏋️", url_path="train_on_synthetic"),
        st.Page("pages/clip_geometry.py", title="CLIP geometry", icon="📐", url_path="clip_geometry"),
        st.Page("pages/stable_bias.py", title="Stable Bias portraits", icon="🧑‍🤝‍🧑", url_path="stable_bias"),
    ],
    "Lessons": [
        st.Page("pages/lesson_ambiguity.py", title="1. Ambiguity", icon="🎓", url_path="lesson_ambiguity"),
        st.Page("pages/lesson_adherence.py", title="2. Adherence to prompt", icon="🎓", url_path="lesson_adherence"),
        st.Page("pages/lesson_diversity.py", title="3. Lack of diversity", icon="🎓", url_path="lesson_diversity"),
        st.Page("pages/lesson_concept.py", title="4. Inability to represent", icon="🎓", url_path="lesson_concept"),
        st.Page("pages/lesson_geometry.py", title="5. CLIP geometry", icon="🎓", url_path="lesson_geometry"),
    ],
    "Share": [
        st.Page("pages/demo_packs.py", title="Demo packs", icon="📦", url_path="demo_packs"),
        st.Page("pages/open_dataset.py", title="Open a dataset", icon="🗂️", url_path="open_dataset"),
        # The lecturer's view of a shared server: listed for the lecturer only (the page checks again).
        st.Page("pages/classroom.py", title="Classroom", icon="🧑‍🏫", url_path="classroom",
                visibility="visible" if ui_queue.is_admin() else "hidden"),
    ],
}

st.navigation(PAGES, expanded=True).run()  # expanded: the Lessons and Share sections stay in view
