"""The use cases that combine the model and the database: register a model, discover and store a set, score and store,
publish, export and import. The `atelier` commands (cli/) and the app's pages (annotator/) both call these; nothing that
decides is written twice."""
