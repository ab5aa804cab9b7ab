"""WeakNet in the browser: the annotator served by ``weaknet app`` (trame-slicer).

- :mod:`.app`      :class:`~weaknet_web.app.AnnotatorApp`: Slicer scene, views, volumes, the annotation session
- :mod:`.ui`       the page (vuetify 3)
- :mod:`.views`    remote slice/3D views that report delivered frames (``state.frames``) and the layouts
- :mod:`.sandbox`  :class:`~weaknet_web.sandbox.DataRoot`: every browser path is confined to the data root
- :mod:`.errors`   callback exceptions → an error bar in the page; the server survives
- :mod:`.server`   :func:`~weaknet_web.server.serve`: start the server, print the URL
"""
