from asg_audit.cli import main

raise SystemExit(main())
