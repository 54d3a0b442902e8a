from perfserve.cli import main

raise SystemExit(main())
