"""Home: what the lab shows, in plain words, with a link to each page."""

import streamlit as st

from app import ui
from core.present.lessons import LESSONS

ui.start_page()

st.title("Diffusion Diversity Lab")
st.markdown(
    "Why do images made by text-to-image models make poor training data? Marwood, Baluja & Alon, "
    "[*Diversity and Diffusion: Observations on Synthetic Image Distributions with Stable Diffusion*]"
    "(https://arxiv.org/abs/2311.00056) (2023), trained classifiers on Stable Diffusion images only and found they "
    "do badly on real photos, even though each image looks real. They name four reasons, plus a question about the "
    "CLIP space the images are judged in. This lab lets you see each one, live, for any prompt."
)

# (title, explanation, page, link label). The fourth finding has no full analysis page: its lesson measures it.
FINDINGS = [
    ("Lack of diversity",
     "Ask for 50 pictures of a tench and you get 50 variations of one picture: similar pose, lighting and framing. "
     "Natural photos of the same class spread much wider. The Diversity page measures the spread of a generated "
     "set in CLIP space (mean similarity, Vendi score, effective rank) next to real photos of the class.",
     "pages/diversity.py", None),
    ("Ambiguity",
     "Many class names have several senses: a *crane* is a bird and a machine. The model picks a sense (often not "
     "the one the dataset meant) and may stick to it for every image.", "pages/ambiguity.py", None),
    ("Adherence to prompt",
     "Images follow the text too literally or too canonically (a textbook tench, centred, on a plain background), "
     "or miss it altogether; stronger guidance trades diversity for adherence.", "pages/adherence.py", None),
    ("Inability to represent the concept",
     "Some concepts the model simply cannot draw: the images show something else, however the prompt is phrased. "
     "Its lesson asks CLIP to name generated images and real photos of the same classes, and compares.",
     "pages/lesson_concept.py", "Lesson: inability to represent the concept"),
    ("Geometry of CLIP embeddings",
     "In CLIP space, synthetic images sit apart from natural photos of the same class and nearer to the prompt's "
     "text: a classifier can tell the two apart, and one trained on synthetic images learns the wrong region.",
     "pages/clip_geometry.py", None),
]

for title, text, page, label in FINDINGS:
    st.subheader(title)
    st.markdown(text)
    st.page_link(page, label=label or f"Open the {title.lower()} page", icon="➡️")

# The geometry finding, tested on a whole class list (shown under its entry, the last of FINDINGS).
st.markdown("For a list of classes: can a probe tell synthetic from natural, how far apart are the distributions, and "
            "how well does a classifier trained only on synthetic images do on real photos?")
st.page_link("pages/synthetic_vs_natural.py", label="Open the synthetic vs natural page", icon="➡️")
st.page_link("pages/train_on_synthetic.py", label="Open the train on synthetic page", icon="➡️")

# The five findings as guided lessons, in the paper's order: one question, one click, one chart each.
st.subheader("Lessons: one click per finding")
st.markdown("For a talk or a class: each lesson asks one question, runs a small preset experiment with one click "
            "(or shows it at once from the cache) and points at what to look for, then opens the full page with the "
            "same settings.")
for lesson in LESSONS.values():
    st.page_link(lesson.page, label=f"{lesson.number}. {lesson.finding}: {lesson.question}", icon="🎓")

st.divider()
st.caption(
    "The paper's exact settings are unknown. Every analysis here says which model, CLIP backbone, prompt template, "
    "number of images, guidance, steps and seeds it used; defaults are the lab's own choice."
)
