"""The traffic simulator: realistic requests and delayed labels, with scripted drift."""
