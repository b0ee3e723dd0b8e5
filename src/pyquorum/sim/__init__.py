"""pyquorum.sim."""
