"""The sans-IO HTTP core shared by the ASGI and WSGI drivers."""
