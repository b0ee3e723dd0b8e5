"""pyquorum.core."""
