from journeymap.server.run import main

main()
