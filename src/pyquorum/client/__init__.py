"""pyquorum.client."""
