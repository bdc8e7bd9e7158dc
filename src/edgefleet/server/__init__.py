"""The central API server: FastAPI app, routes and the services that own transactions."""
