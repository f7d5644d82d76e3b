"""The daemon: the Bridge that wires every part, its process lifecycle, sd_notify, logging and metrics."""
