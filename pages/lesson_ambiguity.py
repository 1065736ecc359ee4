"""Lesson 1: the registry entry core.lessons.LESSONS["ambiguity"] as a guided page (ui_lessons.show calls
ui.start_page() first thing after reading the lesson's model choice, so the sidebar shows the models it uses)."""

import ui_lessons

ui_lessons.show("ambiguity")
