"""What the service and `tagger tag` share: describing scores, the window queue, defaults."""
