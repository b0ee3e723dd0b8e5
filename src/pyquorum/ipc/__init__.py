"""pyquorum.ipc."""
