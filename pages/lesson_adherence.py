"""Lesson 2: the registry entry core.lessons.LESSONS["adherence"] as a guided page (ui_lessons.show calls
ui.start_page() first thing after reading the lesson's model choice, so the sidebar shows the models it uses)."""

import ui_lessons

ui_lessons.show("adherence")
