"""The API's routes, one module per resource; each has `add_routes(app)`."""
