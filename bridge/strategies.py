"""Built-in routing strategies (placeholder until routing lands)."""
