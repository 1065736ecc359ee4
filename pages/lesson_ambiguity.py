"""Lesson 1: the registry entry core.present.lessons.LESSONS["ambiguity"] as a guided page (app.lessons.show calls
ui.start_page() first thing after reading the lesson's model choice, so the sidebar shows the models it uses)."""

import app.lessons

app.lessons.show("ambiguity")
