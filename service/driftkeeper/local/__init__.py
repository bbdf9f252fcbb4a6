"""The single-machine loop: the local policy driver, the promotion gate and the demo."""
