"""The daemon process: signals, sd_notify, logging and reload around one Bridge and its web server."""
