"""HTTP blueprints: thin MethodViews over ``inference.run`` and the registry."""
