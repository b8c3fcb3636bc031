from netprof.cli import main

raise SystemExit(main())
