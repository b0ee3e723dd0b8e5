"""pyquorum.wire."""
