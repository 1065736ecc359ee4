"""Classroom (lecturer only): the queue, the sessions, GPU memory and throughput of a shared server."""

import pandas as pd
import streamlit as st

from app import queue as ui_queue
from app import ui
from core.pipeline import classroom

ui.start_page()
st.title("Classroom")

# 1. Only the lecturer: a login on the allow-list, or the admin token.
if not ui_queue.is_admin():
    conf = ui_queue.settings()
    st.info("This page is for the lecturer. Log in with an address listed in [classroom] admins of the lab's config "
            "file, or type the admin token from [classroom] admin_token.")
    if conf.admin_token:
        with st.form("admin_token_form"):
            token = st.text_input("Admin token", type="password")
            if st.form_submit_button("Open the classroom view"):
                if classroom.is_admin(conf, token=token):
                    st.session_state[ui_queue.ADMIN_STATE] = token
                    st.rerun()
                st.error("That is not the admin token of this server (see [classroom] admin_token in "
                         f"{conf.source}).")
    st.stop()

queue = ui_queue.queue()


# 2. The live view: refreshed every 2 s without rerunning the page.
@st.fragment(run_every=2)
def live() -> None:
    snap = queue.snapshot()
    waiting = sum(r["state"] == "waiting" for r in snap.runs)
    c1, c2, c3, c4, c5 = st.columns(5)
    c1.metric("People in the queue", snap.people)
    c2.metric("Runs waiting", waiting)
    c3.metric("Images/s (last 2 min)", "-" if snap.images_per_s is None else f"{snap.images_per_s:.2f}")
    c4.metric("Images made", snap.served_images)
    c5.metric("Sessions open", ui_queue.session_count())
    gpu = ui_queue.gpu_memory()
    st.caption(gpu)
    if snap.runs:
        st.dataframe(pd.DataFrame(snap.runs).rename(columns={
            "run": "Run", "person": "Person", "kind": "Work", "what": "Prompt", "images": "Images", "made": "Made",
            "state": "State", "waited_s": "Waited (s)", "finish_in_s": "Done in (s)"}),
            hide_index=True, width="stretch")
    else:
        st.caption("The queue is empty.")
    if snap.refused:
        st.caption("Refused so far: " + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in snap.refused.items()))


live()

# 3. Cancel a run (its person sees it stop; finished batches stay in the cache).
with st.form("cancel_run"):
    number = st.number_input("Run number", min_value=1, step=1)
    if st.form_submit_button("Cancel this run"):
        ticket = queue.find(int(number))
        if ticket is None:
            st.warning(f"Run {int(number)} is not in the queue (it may have finished).")
        else:
            ticket.cancel()
            st.success(f"Run {int(number)} is cancelled; it stops after its current batch.")

# 4. The limits in force, and where they come from.
conf = ui_queue.settings()
st.subheader("Limits")
st.caption(f"From {conf.source}; edit it and the next run uses the new values.")
st.table(pd.DataFrame(classroom.describe_limits(conf.limits), columns=["key in [classroom]", "value", "meaning"]))
