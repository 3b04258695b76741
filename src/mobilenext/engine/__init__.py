"""The one training engine under classification, detection and NAS search (:mod:`.runner`), with what every
task shares: settings and their flags (:mod:`.config`), run folders (:mod:`.run_folder`), checkpoints and the
contract by which a task says what its files mean (:mod:`.checkpoint`), records and plots (:mod:`.records`),
distributed set-up, mixed precision and progress. It knows no task by name: the tasks build on it."""
