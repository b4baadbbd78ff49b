"""Django's PostgreSQL backend, with the row-level security setting (students.row_security)
brought up to date before each query."""
