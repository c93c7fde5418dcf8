"""The ``symphainy`` command line: run the system or one component, manage users and sessions."""
