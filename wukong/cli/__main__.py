from wukong.cli import main

main()
