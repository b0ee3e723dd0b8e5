"""pyquorum.tools."""
