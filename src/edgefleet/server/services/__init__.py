"""Domain services: each public function is one database transaction."""
