from sync.entry import main

main()
