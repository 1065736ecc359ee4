"""Diffusion Diversity Lab: `streamlit run Home.py`. Declares the pages; each page file stays short."""

import streamlit as st

st.set_page_config(page_title="Diffusion Diversity Lab", page_icon="🧪", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/diversity.py", title="Diversity", icon="🌈", url_path="diversity"),
]

st.navigation(PAGES).run()
