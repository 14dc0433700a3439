"""Pure decisions: slot allocation, placement, health, and the next step. No I/O here."""
