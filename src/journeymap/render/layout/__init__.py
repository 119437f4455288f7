"""Layouts: view model in, positioned ``Scene`` out. One module per figure."""
