from rear.cli import main

main()
