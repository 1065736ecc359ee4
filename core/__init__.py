"""Diffusion Diversity Lab core: plain Python (no streamlit), usable from a CLI, tests and the app."""
