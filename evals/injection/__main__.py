"""``python -m evals.injection``: run the injection suite, print and write its report."""

from evals.injection.suite import main

raise SystemExit(main())
