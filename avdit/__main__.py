from avdit.cli import main

raise SystemExit(main())
