"""Checks of a course's assignments before learners get them (`learnhub courses validate`).

Two kinds, one report (:class:`~grader.checks.findings.Finding`):

- :mod:`grader.checks.static` reads the test cells (AST, nothing runs) and warns about
  assertions that an "always equal" value would pass;
- :mod:`grader.checks.dynamic` grades the reference solution, the release as learners receive
  it and a cheater through the real sandbox, and reports what each of them scores.

:mod:`grader.checks.cells` finds the test and solution cells both of them work on, and
:mod:`grader.checks.validate` runs them over a course.
"""
