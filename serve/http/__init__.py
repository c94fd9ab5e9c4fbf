"""The inference server's HTTP side: the Starlette app, the KServe V2 and TF Serving routes, the model
registry, metrics and the OpenAPI document. Started by `python -m serve`."""
