"""HTTP routes: thin adapters from Starlette requests to the services."""
