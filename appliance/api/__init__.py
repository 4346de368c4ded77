"""The HTTP API: the Falcon apps, the request pipeline (middleware), every resource and the
generated OpenAPI documents. Resources call services and stores; they never touch sockets."""
