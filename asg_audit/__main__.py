from asg_audit.entry import main

raise SystemExit(main())
