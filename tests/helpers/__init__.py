"""Code the tests share: tiny models and texts, and the reliability kit."""
