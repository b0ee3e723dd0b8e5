"""pyquorum.config."""
