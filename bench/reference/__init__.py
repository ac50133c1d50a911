"""Reference apps the bench compares iris-service against; never imported by it."""
