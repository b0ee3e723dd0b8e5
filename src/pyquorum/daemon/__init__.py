"""pyquorum.daemon."""
