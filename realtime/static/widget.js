// the widget: built by the widget work (issue 7)
