"""What goes out besides CVC: dead letters and the problems file."""
