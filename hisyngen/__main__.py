from hisyngen.cli import main

main()
