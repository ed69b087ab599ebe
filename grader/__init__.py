"""nbgrader on the host: HTTP exchange server, grading policy, sandboxed autograde, feedback."""
