"""The edge worker: talks to the server over HTTP only, never to the database."""
