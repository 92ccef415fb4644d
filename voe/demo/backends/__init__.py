"""The demo airline's backends (``demo``, ``demo-api``, ``demo-js``), registered by entry
point like any third-party backend."""
