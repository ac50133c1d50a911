"""HTTP blueprints: thin MethodViews over the data plane (``state.dataplane()``, ``state.infer``)."""
