"""The reconcile loop: observe -> next step -> act -> observe again."""
